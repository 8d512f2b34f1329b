"""Stage 5, results: metrics, tables (terminal, CSV, JSON), figures, the verdict sentence and the HTML reports."""
