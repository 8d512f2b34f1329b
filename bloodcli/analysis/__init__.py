"""From smear images to counts and a white-cell differential (``bloodcli analyze``): segment, crop, classify, report."""
