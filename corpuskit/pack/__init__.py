"""Pack rendered samples into fixed-capacity sequences without dropping or cutting a token (`corpuskit pack`)."""
