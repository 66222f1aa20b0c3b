"""Background jobs (training, physics) in separate processes: start, poll, cancel, list.

``schema`` (typed request, status with its :class:`~engine.apps.jobs.schema.JobState`,
progress) → ``launcher`` (detached worker processes, psutil) → ``worker`` (what runs inside a
training job) → ``training`` (the training-job API) and ``physics`` (thermal jobs).
"""
