"""Execution on Ray: the driver's session, the render workers, the cluster's resources and helper tasks."""
