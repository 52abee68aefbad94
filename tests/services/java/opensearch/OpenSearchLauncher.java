/*
 * Starts one real OpenSearch node in this JVM for arrowflow's search suites (tests/services/opensearch.sh).
 *
 * A distribution's bin/opensearch runs org.opensearch.bootstrap.OpenSearch, which loads its modules
 * from the modules/ folder of an unpacked tarball. Maven Central serves the server and the modules as
 * jars instead, so this launcher builds the same node with those modules as classpath plugins:
 * org.opensearch.node.Node has a protected constructor taking plugin classes (the one the test
 * framework's MockNode uses), and a subclass here calls it. What the bootstrap adds around the node and
 * this launcher leaves out: the security manager, the production bootstrap checks (heap size, file
 * descriptors, mmap count: this is a single-node test server on 127.0.0.1) and the keystore.
 *
 * Usage: java -cp <classpath> OpenSearchLauncher <home>
 * <home>/config holds opensearch.yml (written by the script: ports, paths, single-node discovery) and
 * log4j2.properties. The node runs until SIGTERM/SIGINT, then closes cleanly (the shutdown hook).
 */

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public final class OpenSearchLauncher {

    /** The modules a distribution ships that the suites use, loaded from the classpath. */
    static final List<Class<? extends Plugin>> MODULES = List.of(
        Netty4Plugin.class,           // HTTP and transport (without it the node has no HTTP server)
        CommonAnalysisPlugin.class,   // the standard analyzers, tokenizers and filters
        PainlessPlugin.class,         // scripts (update scripts, script fields)
        MapperExtrasPlugin.class,     // scaled_float, rank_feature, search_as_you_type, ...
        ReindexPlugin.class           // _reindex, _update_by_query, _delete_by_query
    );

    /** A node with classpath plugins: Node's plugin-taking constructor is protected. */
    static final class ClasspathNode extends Node {
        ClasspathNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    private OpenSearchLauncher() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: OpenSearchLauncher <home>");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        LogConfigurator.registerErrorListener();
        Settings input = Settings.builder().put(Environment.PATH_HOME_SETTING.getKey(), home.toString()).build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            input, Collections.emptyMap(), home.resolve("config"), () -> "arrowflow-opensearch"
        );
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        LogConfigurator.configure(environment);

        Node node = new ClasspathNode(environment, MODULES);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "opensearch-launcher-shutdown"));
        node.start();
        System.out.println("OpenSearchLauncher: node started");
        stopped.await();
    }
}
