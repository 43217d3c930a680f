"""Reading bounces and complaints back (``sendstatus intake``): a source yields messages
(source.py; maildir.py is the first), parse.py tells what each is, core/feedback applies
it, and the source acknowledges it only once that is committed."""
