"""PagePerfect: what a page is missing for the searches that bring it traffic."""
