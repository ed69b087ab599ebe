"""One module per schema revision, in order (0001 ... ); each says what it adds."""
