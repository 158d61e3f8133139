"""The evidence record: the run folder and its hash-chained ledger, the DSSE seal, ``cutover verify``,
and the HTML record (each notebook's export, the run's index and picture, the change page)."""
