"""The JSON control API: VM and host changes seen through XML-RPC, call counts, errors."""

from __future__ import annotations

import pyone

from testkit import http


def test_vm_lifecycle_through_the_control_api(sim_factory):
    sim = sim_factory("--hosts", "2", "--vms-per-host", "1", "--seed", "5")
    one = sim.one()
    status, body = sim.control("POST", "/v1/vms/0/poweroff")
    assert status == 200 and body["vm"]["state"] == "POWEROFF"
    assert one.vm.info(0).STATE == 8
    assert one.host.info(0).VMS.ID == [0]  # powered off, still placed
    assert sim.control("POST", "/v1/vms/0/resume")[1]["vm"]["lcm_state"] == "RUNNING"
    status, body = sim.control("POST", "/v1/vms/0/migrate", {"host": "kvm-02"})
    assert status == 200 and body["vm"]["host"] == "kvm-02"
    assert one.host.info(0).VMS.ID == []
    assert one.host.info(1).VMS.ID == [0, 1]
    assert one.vm.info(0).HISTORY_RECORDS.HISTORY[-1].HOSTNAME == "kvm-02"
    assert sim.control("POST", "/v1/vms/0/suspend")[1]["vm"]["state"] == "SUSPENDED"
    assert one.host.info(1).VMS.ID == [0, 1]  # suspended VMs keep their place too
    assert sim.control("POST", "/v1/vms/0/undeploy")[0] == 409  # not from SUSPENDED
    assert sim.control("POST", "/v1/vms/0/terminate")[1]["vm"]["state"] == "DONE"
    assert one.host.info(1).VMS.ID == [1]
    assert [vm.ID for vm in one.vmpool.info(-2, -1, -1, -1).VM] == [1]


def test_create_then_deploy_a_vm(sim_factory):
    sim = sim_factory("--hosts", "1", "--vms-per-host", "0")
    status, body = sim.control(
        "POST",
        "/v1/vms",
        {"name": "fresh", "memory": 512, "nics": ["10.9.0.1"], "user_template": {"FLAVOURS": 2}},
    )
    assert status == 201
    vm = body["vm"]
    assert (vm["id"], vm["state"], vm["host"], vm["deploy_id"]) == (0, "PENDING", None, "")
    status, body = sim.control("POST", "/v1/vms/0/deploy", {"host": 0})
    assert body["vm"]["deploy_id"] == "one-0" and body["vm"]["host"] == "kvm-01"
    extended = sim.one().vmpool.infoextended(-2, -1, -1, -1).VM[0]
    assert extended.TEMPLATE["CONTEXT"]["ETH0_IP"] == "10.9.0.1"
    assert extended.USER_TEMPLATE["FLAVOURS"] == "2"
    detail = sim.vm(0)
    assert detail["template"]["MEMORY"] == "512"
    status, body = sim.control("POST", "/v1/vms", {"host": "kvm-01", "state": "poweroff"})
    assert status == 201 and body["vm"]["state"] == "POWEROFF"


def test_control_api_errors_are_json_with_the_right_status(sim_factory):
    sim = sim_factory("--hosts", "1", "--vms-per-host", "1")
    assert sim.control("POST", "/v1/vms/42/poweroff") == (
        404,
        {"error": "Error getting virtual machine [42]."},
    )
    status, body = sim.control("POST", "/v1/vms/0/deploy", {"host": "kvm-01"})
    assert status == 409 and "not available for state RUNNING" in body["error"]
    status, body = sim.control("POST", "/v1/vms/0/migrate", {})
    assert status == 400 and "host" in body["error"]
    status, body = sim.control("POST", "/v1/vms/0/migrate", {"host": "kvm-09"})
    assert status == 404 and "kvm-09" in body["error"]
    status, body = sim.control("POST", "/v1/vms/0/explode")
    assert status == 404 and "unknown VM action" in body["error"]
    status, body = sim.control("POST", "/v1/vms/abc/poweroff")
    assert status == 400
    status, body = sim.control("POST", "/v1/vms", {"memory": "lots"})
    assert status == 400 and "body.memory: expected int" in body["error"]
    status, body = sim.control("POST", "/v1/vms", {"id": 0})
    assert status == 409 and "already taken" in body["error"]
    status, _, raw = http("POST", sim.control_url + "/v1/vms", "{not json")
    assert status == 400 and b"malformed JSON" in raw
    status, body = sim.control("POST", "/v1/hosts/kvm-01/state", {"state": "ASLEEP"})
    assert status == 400 and "unknown host state" in body["error"]
    assert sim.control("GET", "/v1/nothing")[0] == 404
    assert sim.control("PUT", "/calls")[0] == 405


def test_host_state_changes(sim_factory):
    sim = sim_factory("--hosts", "2", "--vms-per-host", "1")
    status, body = sim.control("POST", "/v1/hosts/kvm-02/state", {"state": "error"})
    assert status == 200 and body["host"]["state"] == "ERROR"
    assert sim.one().host.info(1).STATE == 3
    assert sim.control("POST", "/v1/hosts/1/state", {"state": 8})[1]["host"]["state"] == "OFFLINE"
    status, body = sim.control("POST", "/v1/vms/0/migrate", {"host": "kvm-02"})
    assert status == 409 and body["error"] == "Host is offline, cannot use it to deploy VM"
    hosts = sim.control("GET", "/v1/hosts")[1]["hosts"]
    assert [(h["name"], h["hostname"], h["state"]) for h in hosts] == [
        ("kvm-01", "127.0.1.1", "MONITORED"),
        ("kvm-02", "127.0.1.2", "OFFLINE"),
    ]


def test_call_counts_per_method_and_reset(sim_factory):
    sim = sim_factory("--hosts", "1", "--vms-per-host", "2")
    one = sim.one()
    one.vmpool.infoextended(-2, -1, -1, -1)
    one.vmpool.infoextended(-2, -1, -1, -1)
    one.hostpool.info()
    try:
        one.vm.info(99)
    except pyone.OneNoExistsException:
        pass
    status, body = sim.control("GET", "/calls")
    assert status == 200
    assert body == {
        "calls": {"one.hostpool.info": 1, "one.vm.info": 1, "one.vmpool.infoextended": 2},
        "total": 4,
    }
    status, body = sim.control("DELETE", "/calls")
    assert body["total"] == 4 and body["reset"] is True
    assert sim.control("GET", "/calls")[1] == {"calls": {}, "total": 0}
    one.vm.info(0)
    assert sim.control("GET", "/calls")[1]["calls"] == {"one.vm.info": 1}


def test_healthz_and_metrics(shared_sim):
    status, body = shared_sim.control("GET", "/healthz")
    assert status == 200 and body["status"] == "ok"
    assert (body["hosts"], body["vms"], body["hypervisors"]) == (3, 9, False)
    status, _, raw = http("GET", shared_sim.control_url + "/metrics")
    assert status == 200 and b"one_cognit_sim_up 1.0" in raw
    assert shared_sim.control("GET", "/v1/hypervisors")[1] == {"enabled": False, "hypervisors": []}
