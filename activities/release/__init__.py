"""Activities of the mini program release: build, compatibility cells and its catalog."""
