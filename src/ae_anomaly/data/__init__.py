"""Getting images in: dataset files, corruptions and the scenario splits."""
