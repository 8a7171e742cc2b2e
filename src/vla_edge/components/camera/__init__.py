"""Camera component: captures frames and publishes them for the inference component."""
