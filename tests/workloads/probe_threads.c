/* probe_threads A B [wait]: two threads, named pmthr_a and pmthr_b, that
 * each call pm_thread_hit() and make raw getppid() system calls a known
 * number of times (A and B), for the probe target-filter tests (--tid,
 * --comm, --cgroup): only the chosen thread or process may be counted.
 * With "wait", the threads print their ids and block until the process
 * gets SIGUSR1, so a tracer can attach first. Prints:
 *   tid a T_a / tid b T_b   (before the calls, flushed)
 *   hits a A / hits b B
 *   getppid a A / getppid b B */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile unsigned long sink;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go_cv = PTHREAD_COND_INITIALIZER;
static int go;

__attribute__((noinline, used)) long pm_thread_hit(long tag)
{
  sink += (unsigned long)tag;
  return tag + 1;
}

struct job {
  const char *name;
  char tag;
  long n, hits, calls;
  pid_t tid;
};

static void *run(void *arg)
{
  struct job *j = arg;
  pthread_setname_np(pthread_self(), j->name);
  j->tid = (pid_t)syscall(SYS_gettid);
  pthread_mutex_lock(&mu);
  printf("tid %c %d\n", j->tag, (int)j->tid);
  fflush(stdout);
  while (!go)
    pthread_cond_wait(&go_cv, &mu);
  pthread_mutex_unlock(&mu);
  for (long i = 0; i < j->n; i++) {
    pm_thread_hit(j->tag);
    j->hits++;
    syscall(SYS_getppid); /* raw: libc does not cache it, one syscall each */
    j->calls++;
  }
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr, "usage: probe_threads A B [wait]\n");
    return 2;
  }
  int wait = argc > 3 && strcmp(argv[3], "wait") == 0;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  /* blocked before the threads exist, so they inherit it and sigwait gets it */
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  struct job jobs[2] = { { "pmthr_a", 'a', atol(argv[1]), 0, 0, 0 }, { "pmthr_b", 'b', atol(argv[2]), 0, 0, 0 } };
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&th[i], NULL, run, &jobs[i]);
  if (wait) {
    int sig;
    sigwait(&set, &sig);
  }
  pthread_mutex_lock(&mu);
  go = 1;
  pthread_cond_broadcast(&go_cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < 2; i++)
    printf("hits %c %ld\n", jobs[i].tag, jobs[i].hits);
  for (int i = 0; i < 2; i++)
    printf("getppid %c %ld\n", jobs[i].tag, jobs[i].calls);
  return 0;
}
