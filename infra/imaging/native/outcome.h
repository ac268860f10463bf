/* What every native entry point's core returns (the pure-C parts the fuzzers call directly). */
#ifndef KILN_OUTCOME_H
#define KILN_OUTCOME_H

enum {
  KILN_OK = 0,       /* done: the result is set */
  KILN_DECLINED = 1, /* not handled here: the caller falls back to sharp */
  KILN_FAILED = -1   /* a hard error: the message is set */
};

#endif
