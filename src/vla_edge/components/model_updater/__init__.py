"""Model-updater component: the one source of the active model; verified, staged rollouts with rollback."""
