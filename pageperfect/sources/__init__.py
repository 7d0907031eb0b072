"""Where the data comes from: the crawl and its address guard, and the Search Console reader and API client."""
