"""Utilities for user inputs and outputs: boxes, images, video files and drawing."""
