"""What the tests share besides fixtures (those stay in the conftest files).

- settings: REPO, DEMO, the test API key and make_settings()
- polling: until(), a deadline and a message for what never happened
- site: the loopback web site tests add pages to
- pipeline: workers and an API per test, on a task-queue prefix of their own; until_stage()
- data: the demo's Search Console rows, pages on the test site
- faults: crawlers that fail on purpose, in front of the real one
- batches: batches through the real API
- cli: the `pageperfect` command as a user runs it
- workflows: the fast layer's workers, real workflows over mocked activities
- histories: the kept histories in tests/histories/ and the scenarios that make them
"""
