"""Results: histories read as grids, comparisons, plots, curve labels and exports."""
