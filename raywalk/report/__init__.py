"""What a person reads about a run: the HTML report and the status text."""
