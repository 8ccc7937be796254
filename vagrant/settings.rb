# The Vagrantfile's knobs, read from TELEMETRY_VM_* environment variables. The defaults are the
# seed's mandatory VM settings; the variables exist so a test (or a smaller laptop) can shrink the
# VM without editing the Vagrantfile. A malformed value stops Vagrant with the variable's name rather
# than producing a VM different from the one asked for.
require "json"

module Telemetry
  class VMSettings
    # name => [default, kind]; every entry is read from TELEMETRY_VM_<NAME>.
    DEFAULTS = {
      box: ["bento/ubuntu-24.04", :string],
      # The box version the appliance is tested with (vagrant/README.md says how to move it).
      box_version: ["202510.26.0", :string],
      # VirtualBox 7.1 needs Vagrant 2.4.2. Lowered only to evaluate the Vagrantfile with an older
      # Vagrant (the tests, on Debian's 2.3.4); never needed to run the VM.
      vagrant_requirement: [">= 2.4.2", :string],
      memory_mb: [8192, :int],
      cpus: [4, :int],
      data_disk_gb: [50, :int],
      dashboard_host_port: [8501, :int],
      # kvm on a normal Linux host; qemu (software emulation) where /dev/kvm is unusable.
      libvirt_driver: ["kvm", :string],
      # binance (live REST API) or replay (a recorded trades file, for hosts without internet).
      producer_source: ["binance", :string],
      # JSON object of extra Ansible variables, merged over the ones the Vagrantfile passes.
      ansible_extra_vars: [{}.freeze, :json],
    }.freeze

    PREFIX = "TELEMETRY_VM_".freeze

    attr_reader(*DEFAULTS.keys)

    def initialize(env = ENV)
      DEFAULTS.each do |name, (default, kind)|
        var = PREFIX + name.to_s.upcase
        raw = env.fetch(var, nil)
        value = raw.nil? || raw.strip.empty? ? default : parse(var, raw.strip, kind)
        instance_variable_set("@#{name}", value)
      end
      check_choice("TELEMETRY_VM_LIBVIRT_DRIVER", @libvirt_driver, %w[kvm qemu])
      check_choice("TELEMETRY_VM_PRODUCER_SOURCE", @producer_source, %w[binance replay])
      freeze
    end

    def to_h
      DEFAULTS.keys.to_h { |name| [name, public_send(name)] }
    end

    private

    def parse(var, raw, kind)
      case kind
      when :int
        Integer(raw, 10).tap { |n| raise ArgumentError if n <= 0 }
      when :json
        JSON.parse(raw).tap { |h| raise ArgumentError unless h.is_a?(Hash) }
      else
        raw
      end
    rescue ArgumentError, TypeError, JSON::ParserError
      want = kind == :int ? "a positive integer" : "a JSON object"
      raise ArgumentError, "#{var}=#{raw.inspect} is not #{want}"
    end

    def check_choice(var, value, choices)
      return if choices.include?(value)

      raise ArgumentError, "#{var}=#{value.inspect} is not one of #{choices.join(', ')}"
    end
  end
end
