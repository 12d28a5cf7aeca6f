"""One module per CLI command; each turns parsed arguments into library calls and renders."""
