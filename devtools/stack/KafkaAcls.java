// The local broker's SCRAM users and ACLs, set through the broker's Admin API in one JVM.
// Run by devtools/stack/kafka_acls.py (`java -cp <kafka libs>/*:<classes> KafkaAcls`), which
// sends one JSON request on standard input (passwords never appear on a command line):
//   {"bootstrap": "127.0.0.1:19092", "admin": {"user": "...", "password": "..."},
//    "users": [{"user": "...", "password": "...", "reset": false}],
//    "managed": [{"type": "TOPIC", "name": "..."}],
//    "acls": [{"principal": "User:x", "type": "TOPIC", "name": "...", "pattern": "LITERAL",
//              "operation": "READ"}]}
// Users missing on the broker (or marked reset) get their SCRAM-SHA-512 credential; on every
// managed resource the ALLOW bindings become exactly `acls` (missing ones created, others
// deleted). Prints one JSON line: what it created, deleted and upserted.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAcls {
    private static final int ITERATIONS = 8192;

    public static void main(String[] args) throws Exception {
        ObjectMapper json = new ObjectMapper();
        JsonNode req = json.readTree(System.in);
        Properties props = new Properties();
        props.put("bootstrap.servers", req.get("bootstrap").asText());
        props.put("security.protocol", "SASL_PLAINTEXT");
        props.put("sasl.mechanism", "SCRAM-SHA-512");
        props.put(
                "sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                        + req.get("admin").get("user").asText()
                        + "\" password=\""
                        + req.get("admin").get("password").asText()
                        + "\";");
        props.put("request.timeout.ms", "30000");
        props.put("default.api.timeout.ms", "60000");
        ObjectNode out = json.createObjectNode();
        try (Admin admin = Admin.create(props)) {
            out.set("upserted", json.valueToTree(upsertUsers(admin, req.get("users"))));
            applyAcls(admin, req, out, json);
        }
        System.out.println(json.writeValueAsString(out));
    }

    private static List<String> upsertUsers(Admin admin, JsonNode users) throws Exception {
        Map<String, UserScramCredentialsDescription> existing =
                admin.describeUserScramCredentials().all().get(60, TimeUnit.SECONDS);
        List<UserScramCredentialAlteration> changes = new ArrayList<>();
        List<String> names = new ArrayList<>();
        for (JsonNode u : users) {
            String name = u.get("user").asText();
            boolean has =
                    existing.containsKey(name)
                            && existing.get(name).credentialInfos().stream()
                                    .anyMatch(c -> c.mechanism() == ScramMechanism.SCRAM_SHA_512);
            if (has && !u.path("reset").asBoolean(false)) {
                continue;
            }
            changes.add(
                    new UserScramCredentialUpsertion(
                            name,
                            new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS),
                            u.get("password").asText()));
            names.add(name);
        }
        if (!changes.isEmpty()) {
            admin.alterUserScramCredentials(changes).all().get(60, TimeUnit.SECONDS);
        }
        return names;
    }

    private static void applyAcls(Admin admin, JsonNode req, ObjectNode out, ObjectMapper json)
            throws Exception {
        Set<AclBinding> wanted = new HashSet<>();
        for (JsonNode a : req.get("acls")) {
            wanted.add(
                    new AclBinding(
                            new ResourcePattern(
                                    ResourceType.fromString(a.get("type").asText()),
                                    a.get("name").asText(),
                                    PatternType.fromString(a.get("pattern").asText())),
                            new AccessControlEntry(
                                    a.get("principal").asText(),
                                    "*",
                                    AclOperation.fromString(a.get("operation").asText()),
                                    AclPermissionType.ALLOW)));
        }
        Set<String> managed = new HashSet<>();
        for (JsonNode m : req.get("managed")) {
            managed.add(m.get("type").asText() + "/" + m.get("name").asText());
        }
        List<AclBindingFilter> stale = new ArrayList<>();
        Set<AclBinding> present = new HashSet<>();
        for (AclBinding b : admin.describeAcls(AclBindingFilter.ANY).values().get(60, TimeUnit.SECONDS)) {
            present.add(b);
            String key = b.pattern().resourceType().name() + "/" + b.pattern().name();
            if (managed.contains(key) && !wanted.contains(b)) {
                stale.add(b.toFilter());
            }
        }
        List<AclBinding> missing = new ArrayList<>();
        for (AclBinding b : wanted) {
            if (!present.contains(b)) {
                missing.add(b);
            }
        }
        if (!stale.isEmpty()) {
            admin.deleteAcls(stale).all().get(60, TimeUnit.SECONDS);
        }
        if (!missing.isEmpty()) {
            admin.createAcls(missing).all().get(60, TimeUnit.SECONDS);
        }
        out.put("created", missing.size());
        out.put("deleted", stale.size());
    }
}
