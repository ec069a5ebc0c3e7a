"""One module per stream agent: a pure core that is easy to test, with a thin Faust wrapper around it."""
