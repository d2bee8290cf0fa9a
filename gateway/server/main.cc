// knooppunt-gateway: the gateway process.
//   knooppunt-gateway --config=gateway.yaml [--port_file=FILE] [--check]
// SIGHUP reloads the registry and agreements; SIGTERM/SIGINT stop the gateway.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gateway/common/log.h"
#include "gateway/server/gateway_config.h"
#include "gateway/server/gateway_server.h"
#include "gateway/server/message_types.h"

ABSL_FLAG(std::string, config, "", "path to gateway.yaml");
ABSL_FLAG(std::string, port_file, "",
          "write the port actually listened on to this file once serving (for listen port 0)");
ABSL_FLAG(bool, check, false, "validate the configuration and exit");
ABSL_FLAG(std::string, instance_id, "",
          "overrides instance_id of the configuration: replicas started from one file need "
          "names of their own (Kubernetes: --instance_id=$(POD_NAME))");

int main(int argc, char** argv) {
  using knooppunt::Log;
  using knooppunt::LogLevel;
  absl::SetProgramUsageMessage("knooppunt-gateway --config=gateway.yaml");
  absl::ParseCommandLine(argc, argv);
  // absl::Mutex deadlock detection is a debugging aid that costs every lock a graph update;
  // the gateway is not a debug build.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) {
    std::fprintf(stderr, "knooppunt-gateway: --config is required\n");
    return 2;
  }
  absl::StatusOr<knooppunt::config::v1::GatewayConfig> config =
      knooppunt::server::LoadGatewayConfig(config_path);
  if (!config.ok()) {
    Log(LogLevel::kError, "config_invalid", {{"error", std::string(config.status().message())}});
    return 1;
  }
  if (!absl::GetFlag(FLAGS_instance_id).empty()) {
    config->set_instance_id(absl::GetFlag(FLAGS_instance_id));
  }
  if (absl::GetFlag(FLAGS_check)) {
    absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> types =
        knooppunt::server::LoadMessageTypes(
            {config->descriptor_set_files().begin(), config->descriptor_set_files().end()});
    if (!types.ok()) {
      std::fprintf(stderr, "%s\n", std::string(types.status().message()).c_str());
      return 1;
    }
    absl::StatusOr<std::shared_ptr<const knooppunt::policy::PolicySnapshot>> policy =
        knooppunt::policy::LoadPolicy(knooppunt::server::PolicySourcesOf(*config), **types);
    if (!policy.ok()) {
      std::fprintf(stderr, "%s\n", std::string(policy.status().message()).c_str());
      return 1;
    }
    std::printf("configuration valid: %zu organisations, %zu agreements, version %s\n",
                (*policy)->registry.organisations().size(),
                (*policy)->agreements.agreements().size(), (*policy)->version.c_str());
    return 0;
  }

  // Signals are taken synchronously by this thread (sigwait), so no handler runs inside
  // gRPC's threads; block them before any thread is started so all threads inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // reload the policy
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<knooppunt::server::GatewayServer>> gateway =
      knooppunt::server::GatewayServer::Start(*config);
  if (!gateway.ok()) {
    Log(LogLevel::kError, "start_failed", {{"error", std::string(gateway.status().message())}});
    return 1;
  }
  const int port = (*gateway)->port();
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    // Written to a temporary name and renamed, so a reader never sees a partial file.
    const std::string tmp = absl::GetFlag(FLAGS_port_file) + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::rename(tmp.c_str(), absl::GetFlag(FLAGS_port_file).c_str());
  }
  Log(LogLevel::kInfo, "serving",
      {{"listen", config->listen()},
       {"port", absl::StrCat(port)},
       {"instance_id", config->instance_id()},
       {"policy_version", (*gateway)->policy().Current()->version},
       {"agreements", absl::StrCat((*gateway)->policy().Current()->agreements.agreements().size())}});

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    (*gateway)->ReloadPolicy("sighup").IgnoreError();  // logged either way
  }
  Log(LogLevel::kInfo, "shutting_down", {{"signal", absl::StrCat(signal_number)}});
  // Order: deliveries stopped, server drained (calls in flight get shutdown_grace, then are
  // cancelled), then — in the destructor — the melding store closed and the audit log
  // flushed (final checkpoint signed).
  const absl::Duration grace = absl::Seconds(config->shutdown_grace().seconds()) +
                               absl::Nanoseconds(config->shutdown_grace().nanos());
  (*gateway)->Shutdown(grace);
  (*gateway)->Wait();
  gateway->reset();  // store closed, audit log flushed and checkpointed
  Log(LogLevel::kInfo, "stopped");
  return 0;
}
