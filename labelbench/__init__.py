"""Label quality scores vs. real label errors: the library behind the DVC pipeline."""
