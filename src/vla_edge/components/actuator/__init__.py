"""Actuator component: applies action chunks to a Feetech servo arm, safely, and reports joint state."""
