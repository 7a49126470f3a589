"""A run's output, in one place: `stream` (the live Redis stream viewers read, fenced by the run's
lease), `store` (the sink a worker feeds: blocks of lines in the database, caps, the daily budget,
the live publish) and `read` (stored lines read back: API pages, text downloads, the run page's
tail, the websocket's backlog). Not to be confused with webapp/process_log.py, the log lines of
our own processes."""
