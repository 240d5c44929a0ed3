"""``tvdeploy tune``: find, measure and record the fastest correct deployment of an artifact on this host."""
