/* airlock from C: run a command, give the guest a secret it only sees as a placeholder, and
 * watch a request to a host outside allow_net be refused.
 *   cc example.c -I capi -L build/capi -lairlock && ./a.out */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airlock.h"

#define REAL_KEY "sk-example-0123456789abcdef-not-real"

static int run(airlock_sandbox *sb, const char *command, airlock_exec_result *r) {
  int rc;
  airlock_exec_result_free(r);
  rc = airlock_sandbox_sh(sb, command, NULL, r);
  if (rc != AIRLOCK_OK) fprintf(stderr, "sh failed: %s: %s\n", airlock_status_name(rc), airlock_last_error());
  return rc;
}

int main(void) {
  airlock_sandbox_options o;
  airlock_sandbox *sb = NULL;
  airlock_exec_result r;
  const char *allow[] = {"api.example.com"};
  airlock_secret secret;
  int rc;

  airlock_sandbox_options_init(&o);
  o.boot_timeout_ms = 240000;
  o.allow_net = allow;
  o.allow_net_count = 1;
  secret.name = "API_KEY";
  secret.value = REAL_KEY;
  secret.hosts = allow;
  secret.hosts_count = 1;
  o.secrets = &secret;
  o.secrets_count = 1;
  rc = airlock_sandbox_create(&o, &sb);
  if (rc != AIRLOCK_OK) {
    fprintf(stderr, "create failed: %s: %s\n", airlock_status_name(rc), airlock_last_error());
    return 1;
  }

  airlock_exec_result_init(&r);
  /* 1. A command. */
  if (run(sb, "echo hello from $(uname -s) $(uname -r)", &r) != AIRLOCK_OK || r.exit_code != 0)
    return 1;
  printf("command: %s", r.stdout_data);

  /* 2. The guest only has a placeholder for API_KEY. */
  if (run(sb, "printf %s \"$API_KEY\"", &r) != AIRLOCK_OK) return 1;
  printf("guest sees API_KEY=%s\n", r.stdout_data);
  if (r.stdout_len == 0 || strstr(r.stdout_data, REAL_KEY) != NULL) {
    fprintf(stderr, "the guest saw the real key or nothing\n");
    return 1;
  }
  /* 3. A host outside allow_net is refused (by DNS or by the proxy). */
  if (run(sb, "wget -q -O /dev/null http://example.org/ 2>&1; echo \" exit=$?\"", &r) != AIRLOCK_OK)
    return 1;
  printf("request to example.org: %s", r.stdout_data);
  if (strstr(r.stdout_data, "403") == NULL || strstr(r.stdout_data, "exit=0") != NULL) {
    fprintf(stderr, "expected the proxy's 403 for example.org\n");
    return 1;
  }
  airlock_exec_result_free(&r);
  airlock_sandbox_destroy(sb);
  printf("EXAMPLE ok command=ok secret=placeholder egress=refused\n");
  return 0;
}
