"""A sweep's outputs: CSV, JSON, plots, the HTML report and the terminal's text."""
