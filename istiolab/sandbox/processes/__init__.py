"""The parts of the sandbox's process supervisor (../supervisor.py), one concern each.

spec.py       what to run (ProcessSpec) and what the supervisor reports (ProcessStatus)
identity.py   recognising a process again by pid, start time and command line (/proc on Linux)
handles.py    one running process: a child of ours, or one adopted from an earlier control plane
probes.py     readiness probes: a TCP connect or an HTTP GET, like a Kubernetes readinessProbe
backoff.py    how long to wait before restarting a crashed process (CrashLoopBackOff)
entry.py      the supervisor's record of one process, and its line in processes.json
logs.py       each process's log file: markers, a size cap, the last lines
records.py    processes.json and the lock that keeps one control plane per state directory
"""
