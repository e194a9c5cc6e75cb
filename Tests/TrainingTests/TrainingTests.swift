// Training tests arrive with the Training module's issue.
