"""Release: a launch-template version, the deployment that rolls it out, the lock."""
