"""Stage 4, running a plan: the plan and execution options, the extraction runner (local processes, threads for
CNNs, Dask), the feature cache, the feature table, references fitted on training images, feature-set unions."""
