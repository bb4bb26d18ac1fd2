"""What a run leaves for people: the run folder's files (artifacts), the PNG
plots, and the classification metrics. Needs no Keras."""
