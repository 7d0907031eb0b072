"""Activities: thin wrappers that load inputs from Postgres, call the plain analysis
functions in pageperfect/, store outputs and return small summaries."""
