"""The stock setup the LearnHub benchmark compares against: image, hub config and hub process."""
