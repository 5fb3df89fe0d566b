"""Beyond one process: batch inference on a Ray cluster with sharded, resumable results
(:func:`~visionports.distributed.ray_runner.run_image_task_on_ray`)."""
