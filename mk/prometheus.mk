# Prometheus and promtool for the monitoring tests (tests/deploy/test_prometheus.py): a real Prometheus
# scrapes a live rerankd, promtool checks /metrics and the shipped rules (deploy/prometheus/) and runs
# their unit tests. Debian's package; installed by `make test` when missing (as root, or with sudo).

PROMETHEUS_APT_PACKAGES := prometheus
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)

TEST_DEPS += prometheus-tools

.PHONY: prometheus-tools check-rules

prometheus-tools:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
		echo "installing $(PROMETHEUS_APT_PACKAGES)"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(PROMETHEUS_APT_PACKAGES); }
	@command -v promtool >/dev/null 2>&1 || { echo "prometheus-tools: promtool is still missing" >&2; exit 1; }

# The rule checks alone (make test runs them through pytest too).
check-rules: prometheus-tools
	promtool check rules deploy/prometheus/rerankd-rules.yml
	cd deploy/prometheus && promtool test rules rerankd-rules.test.yml
