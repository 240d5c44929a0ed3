"""Offline batch inference past one machine, on Ray Data (the ``ray`` extra): a ``map_batches`` callable around the
torch-free runtime (:mod:`tvdeploy.batch.predictor`) and the job behind ``tvdeploy predict --engine ray``
(:mod:`tvdeploy.batch.ray_job`). tvdeploy schedules nothing itself: Ray Data reads, batches, places actors and
streams the rows.
"""
