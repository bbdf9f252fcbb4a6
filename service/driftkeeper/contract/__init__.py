"""What a model pod writes and its readers read, in one place: the names of the window
counters (``names``) and a reader of their text exposition (``text``). The pod's tally
encodes with these names (``serving/tally.py``); the operator decodes with them
(``driftkeeper_operator/counters.py``, ``sources.py``)."""
