"""The step engine: a notebook's ``Runbook`` and its cell verbs (``rb.sh``, ``rb.http``, ``rb.promql``,
``rb.browse``), expected results, gates and approvals, and the runner that executes a phase's
notebooks in one kernel per run, on time (Section 2's slots), one run per environment at a time."""
