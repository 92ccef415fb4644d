"""Which searches to run next when the budget cannot run them all as often as wanted.

``cycle`` (the plan's cycles) lives in ``voe.master.cycles``; the schedulers here choose
single searches continuously: ``ttl`` (a lifetime by days before departure), ``adaptive``
(Nutch's: shorten an interval on change, lengthen it on none) and ``freshness`` (each
search's change rate learnt from its observations, frequencies that keep the most searches
fresh within the budget). They are plain objects with no clock or sockets of their own.
"""
