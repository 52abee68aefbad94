/*
 * Starts one real Elasticsearch node in this JVM for arrowflow's elasticsearch-py suite
 * (tests/services/elasticsearch.sh).
 *
 * A distribution's bin/elasticsearch runs a CLI that starts org.elasticsearch.bootstrap.Elasticsearch
 * with the server on the module path, the entitlement agent and the bundled modules. Maven Central
 * serves the server and transport-netty4 as jars, so this launcher does what the bootstrap's three
 * phases do that a single test node needs: configure logging from <home>/config, build the
 * environment from elasticsearch.yml, load the modules under <home>/modules with the server's own
 * PluginsLoader, and start a Node. What it leaves out: the entitlement agent (the replacement of the
 * security manager), the production bootstrap checks, native-controller spawning and the keystore.
 * The server runs from the classpath (as Elasticsearch's own test clusters do), so module plugins are
 * loaded without the server's qualified exports (the descriptor the script writes has no modulename).
 *
 * Usage: java -cp <classpath> ElasticsearchLauncher <home>
 * The node runs until SIGTERM/SIGINT, then closes cleanly (the shutdown hook).
 */

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.PluginsLoader;

public final class ElasticsearchLauncher {

    private ElasticsearchLauncher() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: ElasticsearchLauncher <home>");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        LogConfigurator.registerErrorListener();
        Settings input = Settings.builder().put(Environment.PATH_HOME_SETTING.getKey(), home.toString()).build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            input, Map.of(), home.resolve("config"), () -> "arrowflow-elasticsearch"
        );
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        LogConfigurator.configure(environment, true);

        PluginsLoader plugins = PluginsLoader.createPluginsLoader(
            PluginsLoader.loadModulesBundles(environment.modulesDir()),
            PluginsLoader.loadPluginsBundles(environment.pluginsDir()),
            Map.of(),
            false  // no server exports: the server is on the classpath, not a named module
        );
        Node node = new Node(environment, plugins);
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
        }, "elasticsearch-launcher-shutdown"));
        node.start();
        System.out.println("ElasticsearchLauncher: node started");
        stopped.await();
    }
}
