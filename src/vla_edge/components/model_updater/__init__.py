"""Model-updater component: reports which model the device runs (updating comes later)."""
