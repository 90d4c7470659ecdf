import something
