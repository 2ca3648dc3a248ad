"""raywalk: distributed rendering of Stable Diffusion latent-space walks on Ray.

The public API for notebooks and scripts::

    from raywalk import Trajectory, load_job
    job = load_job("jobs/dog-to-fruit-150.yaml")
    traj = Trajectory(job, keyframes)       # (K, 77, D), prompts in job order
    enc, noise = traj.frames(start, stop)
"""

from raywalk._version import __version__
from raywalk.core.job import Job
from raywalk.core.trajectory import Trajectory
from raywalk.errors import JobError
from raywalk.jobfile import job_from_dict, load_job

__all__ = ["Job", "JobError", "Trajectory", "__version__", "job_from_dict", "load_job"]
