"""Packaging for Greengrass: GDK custom builds."""
