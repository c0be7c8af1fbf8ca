"""Tests of deploy/: manifests, image recipe, and the installed wheel serving as in the image."""
