"""Packaging for Greengrass: pinned dependencies (:mod:`.constraints`), GDK custom builds (:mod:`.gdk_build`),
the inference recipe's image placeholders (:mod:`.recipes`), local deployments (:mod:`.local_deploy`) and
baking a policy into the inference image (:mod:`.bake_model`)."""
