/* probe_usdt [ticks]: a program with USDT probes that knows its own counts,
 * for the probe e2e tests. Fires pmtest:tick(i, i % 5, -i) `ticks` times
 * (default 5000) and pmtest:gated(i % 3) as often, but only while a tracer
 * has set its semaphore (libbpf does when it attaches), so the count it
 * prints for gated is what the tracer must see. Prints:
 *   ticks N
 *   tick_mod m N_m        (one line per i % 5)
 *   gated N                (times the semaphore was set)
 * The probes come from <sys/sdt.h> (systemtap-sdt-dev) when it is
 * installed; otherwise from the macro below, which writes the same
 * .note.stapsdt entries (version 3 of the SDT note format). The tests ran
 * with the macro (the package was not on the machine). */
#include <stdio.h>
#include <stdlib.h>

#if defined(__has_include) && __has_include(<sys/sdt.h>)
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#define TICK(a, b, c) STAP_PROBE3(pmtest, tick, a, b, c)
#define GATED(a) STAP_PROBE1(pmtest, gated, a)
/* with semaphores on, every probe of the file names one */
__extension__ unsigned short pmtest_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));
__extension__ unsigned short pmtest_gated_semaphore __attribute__((unused)) __attribute__((section(".probes")));
#define GATED_ON() __builtin_expect(pmtest_gated_semaphore, 0)
#else
/* the base every note's addresses are relative to, once per object */
__asm__(".ifndef _.stapsdt.base\n"
        ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"
        ".weak _.stapsdt.base\n.hidden _.stapsdt.base\n"
        "_.stapsdt.base: .space 1\n.size _.stapsdt.base, 1\n"
        ".popsection\n.endif\n");
/* a nop at the probe site and a note naming it: provider, name, the
 * semaphore's address (0: none) and each argument as SIZE@OPERAND */
#define PM_SDT_NOTE(prov, name, sem, args)                                     \
  "990: nop\n"                                                                 \
  ".pushsection .note.stapsdt,\"?\",\"note\"\n"                                \
  ".balign 4\n"                                                                \
  ".4byte 992f-991f, 994f-993f, 3\n"                                           \
  "991: .asciz \"stapsdt\"\n"                                                  \
  "992: .balign 4\n"                                                           \
  "993: .8byte 990b\n"                                                         \
  ".8byte _.stapsdt.base\n"                                                    \
  ".8byte " sem "\n"                                                           \
  ".asciz \"" prov "\"\n"                                                      \
  ".asciz \"" name "\"\n"                                                      \
  ".asciz \"" args "\"\n"                                                      \
  "994: .balign 4\n"                                                           \
  ".popsection\n"
unsigned short pmtest_gated_semaphore __attribute__((used, section(".probes")));
#define TICK(a, b, c)                                                          \
  __asm__ __volatile__(PM_SDT_NOTE("pmtest", "tick", "0", "-8@%[x] -4@%[y] -8@%[z]") \
                       ::[x] "nor"((long)(a)), [y] "nor"((int)(b)), [z] "nor"((long)(c)))
#define GATED(a)                                                               \
  __asm__ __volatile__(PM_SDT_NOTE("pmtest", "gated", "pmtest_gated_semaphore", "-4@%[x]") \
                       ::[x] "nor"((int)(a)))
#define GATED_ON() __builtin_expect(pmtest_gated_semaphore, 0)
#endif

int main(int argc, char **argv)
{
  long ticks = argc > 1 ? atol(argv[1]) : 5000;
  long per_mod[5] = { 0 }, gated = 0;
  for (long i = 0; i < ticks; i++) {
    TICK(i, (int)(i % 5), -i);
    per_mod[i % 5]++;
    if (GATED_ON()) {
      GATED((int)(i % 3));
      gated++;
    }
  }
  printf("ticks %ld\n", ticks);
  for (int m = 0; m < 5; m++)
    printf("tick_mod %d %ld\n", m, per_mod[m]);
  printf("gated %ld\n", gated);
  return 0;
}
