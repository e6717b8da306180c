//! Node agent: pod lifecycle, runtimes, probes, logs and service proxy (issue 7 on).
