"""``vla-edge fleet``: ship inference images and models to a fleet of Greengrass core devices.

The modules follow the rollout's steps, each a thin layer over one AWS API so the requests
can be checked one by one (see tests/fleet):

* :mod:`.ecr`          the image repository, registry login, the pushed image's digest
* :mod:`.docker`       the docker commands (run when an engine is present, printed otherwise)
* :mod:`.components`   the inference recipe pinned to an image digest, component versions
* :mod:`.deployments`  thing-group deployments with rollout, abort, timeout and rollback settings
* :mod:`.dependencies` new versions checked against the group's other components' requirements
* :mod:`.s3`           model files to S3 for model-only rollouts
* :mod:`.watch`        a deployment's progress until every device finished
* :mod:`.devices`      which component and model version each device reports
* :mod:`.publish`      the whole flow behind ``vla-edge model publish``
* :mod:`.aws`          clients, and botocore errors turned into :class:`FleetError`
* :mod:`.dryrun`       clients that print each call instead of making it
* :mod:`.cli`, :mod:`.model_cli`  ``vla-edge fleet ...`` and ``vla-edge model publish``

Nothing here imports boto3 at module import time: ``vla-edge`` starts fast on devices
that never install the fleet extra.
"""
