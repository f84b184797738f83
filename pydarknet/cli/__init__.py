"""Thin command-line front end: argument parsing per Darknet command group, calls into the library."""
