"""Inference component: camera frames + joint state in, timed action chunks out."""
